"""`make bench`: load measurements of the gateway against a raw reference (see RESULTS.md)."""
