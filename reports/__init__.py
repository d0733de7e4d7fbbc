"""Results -> tables, plots, report.html, the cost model and the CI gate."""
