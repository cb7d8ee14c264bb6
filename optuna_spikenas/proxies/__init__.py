"""Training-free proxies other than the Hamming-kernel family of ``score.py``, one module each;
``proxy_catalog.PROXIES`` registers them."""
