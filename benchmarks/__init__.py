"""The benchmarks (``python benchmarks/<name>.py``), importable as ``genview_hf.benchmarks`` so that
the demo reads the efficacy benchmark's settings from here and the tests import the scripts they
check, from a clone or an installed wheel (as ``genview_hf.recipes``)."""
