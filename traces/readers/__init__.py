"""One module per input format; each returns a :class:`~traces.readers.base.RawScan` for
:mod:`traces.validate` to check and normalize. :mod:`traces.load` picks the reader."""
