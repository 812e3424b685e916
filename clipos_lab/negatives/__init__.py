"""Negative labels for zero-shot and test-time OOD detection: the word list and the pure tensor algorithms.

* :mod:`.vocab`: WordNet 3.0 nouns / adjectives (or any word list) as an ordered :class:`Vocabulary`;
* :mod:`.text`: template-averaged text embeddings of many words, chunked;
* :mod:`.grouping`: the grouped ID-share score NegLabel, CSP and AdaNeg share;
* :mod:`.neglabel`: NegLabel's negative mining (percentile distance, per part of speech);
* :mod:`.csp`: CSP's conjugated semantic pool (adjective + superclass-word phrases) and its selection;
* :mod:`.adaneg`: AdaNeg's test-time memory of negative (and ID) proxies.
"""
