"""`llem run`: the study file, runners, dispatch and the manifest."""
