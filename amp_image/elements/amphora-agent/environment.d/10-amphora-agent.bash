# Where the Octavia amphora agent comes from (set by amp-image from
# --agent-source / --agent-version; see README.rst).  As upstream's element:
# DIB_REPOLOCATION_amphora_agent alone means a git source.
if [ -z "${DIB_AMP_AGENT_SOURCE_TYPE:-}" ]; then
    if [ -n "${DIB_REPOLOCATION_amphora_agent:-}" ]; then
        DIB_AMP_AGENT_SOURCE_TYPE=git
    else
        DIB_AMP_AGENT_SOURCE_TYPE=pypi
    fi
fi
export DIB_AMP_AGENT_SOURCE_TYPE
# Only a git source is fetched by source-repositories
# (source-repository-amphora-agent); for the others it fetches nothing.
if [ "$DIB_AMP_AGENT_SOURCE_TYPE" != git ]; then
    export DIB_INSTALLTYPE_amphora_agent=package
fi
export DIB_AMP_AGENT_SOURCE=${DIB_AMP_AGENT_SOURCE:-}
export DIB_AMP_AGENT_VERSION=${DIB_AMP_AGENT_VERSION:-19.0.0}
export DIB_AMP_AGENT_CONSTRAINTS=${DIB_AMP_AGENT_CONSTRAINTS:-}
# 1: the agent's pip install compiles C extensions (package-installs.yaml
# installs a compiler for it, build-only).
export DIB_AMP_AGENT_COMPILE=${DIB_AMP_AGENT_COMPILE:-0}
export DIB_AMP_CA_BUNDLE=${DIB_AMP_CA_BUNDLE:-}
# As amphora-base's default: 0 keeps python3-venv in the image.
export DIB_AMP_SLIM=${DIB_AMP_SLIM:-1}
