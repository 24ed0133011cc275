"""The demo: the tiny bundles the tests and the demo run on, and the synthetic world of the demo model."""
