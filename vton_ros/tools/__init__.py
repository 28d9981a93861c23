"""Command-line tools (console_scripts) of vton_ros."""
