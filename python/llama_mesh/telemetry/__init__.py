"""What every process of the mesh says about itself: Prometheus metrics (metrics).
docs/operations.md tells how to use them.
"""
