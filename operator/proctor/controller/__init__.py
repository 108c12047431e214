"""The control plane: thin kopf handlers over pure reconcile functions and Job builders.

Reconciles ValidationPyramid and Experiment objects from apply to conclusion. Handlers only read the
event, call a pure function from this package and write what it returns; everything that decides
is a plain function tested without a server. (Being built: see the issue "The controller".)
"""
