"""Run plumbing: run folders under reports/, the papermill runner, the reports index."""
