"""Images in and out, without ROS: camera sources, image files, codecs, garments, samples."""
