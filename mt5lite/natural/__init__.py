"""The natural corpus: multilingual text and a translation task built from CLDR names (see ``corpus``)."""
