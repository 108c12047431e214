"""Local mode: run experiments on a cluster from this terminal and watch them to the end.

`proctor local run` (proctor.cli.local) gives this package a kubeconfig (the emulated cluster it
started, or a real one) and the manifests. Here: install the CRDs and start the operator
(bootstrap.py), apply the manifests (manifests.py), read each run's state into plain views
(progress.py), draw them live (live.py), summarise them for people and agents (summary.py), and
render recovery bundles (bundles.py). Nothing here imports the emulated cluster.
"""
