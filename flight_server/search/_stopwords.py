"""English function words the keyword index drops, in documents and in questions.

Recall questions are mostly function words ("what did she say when...");
left in, they outweigh the one content word that matters. On LoCoMo a list
like this lifted BM25 recall@10 from 0.56 to 0.61 (bench/keyword_engines.py).
Written for this project: pronouns, auxiliaries, determiners, prepositions,
conjunctions and question words.
"""

STOPWORDS: frozenset[str] = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves s t don shouldn didn
doesn isn wasn weren hasn haven hadn won wouldn couldn mustn ll re ve d m o y ain aren also
may might must shall yet ever even much many via upon onto within without
""".split())
