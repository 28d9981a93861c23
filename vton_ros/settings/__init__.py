"""
Settings: the one schema, its typed views, the parameter files and their stack.

``schema`` (every setting: name, type, range, description), ``views`` (frozen dataclasses
built from it per component), ``files`` (YAML profiles and overrides checked against it),
``choices`` (the allowed names of every choice) and ``package_paths`` (package:// paths).
"""
