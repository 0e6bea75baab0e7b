"""Named, parameterised SQL (``*.sql``) and the versioned schema DDL (``schema/NNN_*.sql``), shipped as
package data and read through ``collectors.resources``."""
