"""The built-in components: internal plugins holding only hook implementations."""
