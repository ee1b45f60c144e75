"""The `stripe-sync` command line: imports every layer, imported by none."""
