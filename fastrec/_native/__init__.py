"""Compiled core of fastrec (Cython over the C sources in csrc/)."""
