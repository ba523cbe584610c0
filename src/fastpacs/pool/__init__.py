"""The worker pool: long-lived processes for the CPU work (parsing, decoding, rendering)."""
