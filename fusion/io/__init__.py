"""The I/O layer: reading (and writing) the file formats a cohort is made of.

Manifests and tables (`cohort`), DICOM series (`dicom_series`), genomic tables and MAF files
(`genomic`), GMT gene-set files (`gmt`), per-patient feature files (`feature_files`) and tile images
(`tiles`). Nothing here knows about modalities, heads or models: this layer sits below them all,
and from `fusion` it may import only the leaves (`fusion.errors`, `fusion.version`); see
tests/unit/test_import_layers.py for the whole layer table.
"""
