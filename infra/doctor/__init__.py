"""``modelfn doctor``: what a deploy of this catalog would hit in this account, said first."""
