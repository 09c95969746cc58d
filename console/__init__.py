"""The operator console (运行监控台): server-rendered pages over the four services' HTTP APIs."""
