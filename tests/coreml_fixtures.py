"""What the Core ML export and runner tests share."""

RANGE = dict(min_hw=(16, 16), max_hw=(256, 256))  # the flexible input range every test package gets
