"""Goal handling without ROS: admission, the try-on job, client strings, files and presence."""
