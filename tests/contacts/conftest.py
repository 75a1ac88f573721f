from tests.intake.console.conftest import agent, running  # noqa: F401  (console fixtures)
