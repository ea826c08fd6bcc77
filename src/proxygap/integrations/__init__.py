"""Bridges from proxygap's overseers to other libraries' trainers (``trl``)."""
