"""Names of the zoo's models and domains, importable without torch (recipes, runtimes, CLI help)."""

MODELS = ("lenet5", "alexnet", "vgg16", "densenet")
DOMAINS = ("spectral", "spatial")
