"""The operator side: applying manifests, the views the CLI prints, the live view, explain, export,
metrics, ACL users and the embedded one-machine run."""
