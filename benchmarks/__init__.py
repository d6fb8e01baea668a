"""One script per question, each run from the repository root as ``python -m benchmarks.NAME``; the records they
write are in ``benchmarks/results/<study>/`` (see ``benchmarks/README.md``)."""
