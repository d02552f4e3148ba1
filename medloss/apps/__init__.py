"""Applications built on the library: ``medloss demo`` and ``medloss example``."""
