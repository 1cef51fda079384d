"""Batch scoring into the prediction store: the cascade in process (``local``) or on Ray Data (``ray``)."""
