"""rclpy nodes of vton_ros: thin wrappers around vton_ros.pipeline."""
