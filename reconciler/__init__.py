"""schedule-reconciler: drift between ZenML's schedule registry and the orchestrators."""

__version__ = "0.1.0"
