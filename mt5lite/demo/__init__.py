"""The demo (layer 4): the numbers <-> words task, the bundled demo model's training recipe and model card."""
