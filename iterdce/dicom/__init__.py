"""DICOM in and out: finding a study's DCE acquisition in a DICOM tree (``scan``, ``headers``, ``geometry``,
``phases``, ``timing``, ``volume``), writing it as a raw dataset (``importer``, ``report``) and writing
synthesized phases back as derived DICOM series (``derived``). See documentation/dicom.md."""
