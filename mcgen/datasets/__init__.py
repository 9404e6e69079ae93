"""Built-in datasets, registered through the plugin hooks (use :func:`mcgen.load_dataset`)."""
