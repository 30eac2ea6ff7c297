"""fastrec: pack image folders and tar archives into MXNet RecordIO shards, fast."""

__version__ = "0.1.0"
