"""Reports: statistics over seeds, leaderboards and plots, and the ``compare`` job that produces them."""
