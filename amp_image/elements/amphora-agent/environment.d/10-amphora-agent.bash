# Where the Octavia amphora agent comes from (set by amp-image from
# --agent-source / --agent-version; see README.rst).
export DIB_AMP_AGENT_SOURCE_TYPE=${DIB_AMP_AGENT_SOURCE_TYPE:-pypi}
export DIB_AMP_AGENT_SOURCE=${DIB_AMP_AGENT_SOURCE:-}
export DIB_AMP_AGENT_REF=${DIB_AMP_AGENT_REF:-}
export DIB_AMP_AGENT_VERSION=${DIB_AMP_AGENT_VERSION:-19.0.0}
export DIB_AMP_AGENT_CONSTRAINTS=${DIB_AMP_AGENT_CONSTRAINTS:-}
export DIB_AMP_CA_BUNDLE=${DIB_AMP_CA_BUNDLE:-}
