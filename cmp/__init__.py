"""tagpin: an Argo CD Config Management Plugin that renders apps and pins ECR images to digests."""

__version__ = "0.1.0"
