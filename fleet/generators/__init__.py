"""Tools that compute what the fleet pins or generates: the policy pack's facts module, and the content digest of
a rendezvous source archive."""
