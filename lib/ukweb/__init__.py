"""ukweb: reproduction of Shukla et al. 2004, user-space vs kernel-space web servers.

One module per concern (see README, "Where things are"): workload, specweb99, fileset,
testbed, servers, loadgen, runs, logs, analysis, claims, figures, cli.
"""

__version__ = "0.1.0"
