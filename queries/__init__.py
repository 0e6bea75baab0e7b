"""Named, parameterised SQL (``*.sql``) and the versioned schema DDL (``schema/NNN_*.sql``), shipped as
package data (installed as ``loomgate_data.queries``) and read through ``collectors.resources``."""
