"""Host sensors: what they read (``readers``), how they recognise client records
(``fingerprints``), and the file sensor itself (``files``)."""
