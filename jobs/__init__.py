"""Op jobs of the code location (work that is not an asset materialisation, e.g. placing orders)."""
