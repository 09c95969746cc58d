"""The KPI oracle: figures written by hand from ARCHITECTURE.md's KPI definitions."""
