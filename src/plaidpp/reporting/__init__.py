"""Tables and plots from what the pipeline wrote: ``plaidpp report``."""
