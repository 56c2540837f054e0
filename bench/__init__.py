"""tagpin's benchmark suite: `python -m bench` times renders against a PyYAML C-loader floor."""
