# Distributions among octavia's requirements (the controller's) that no
# amphora ever read under every scenario amp-image's tests drive: the
# listener, health monitor, SR-IOV and ACTIVE_STANDBY conformance runs with
# octavia 19.0.0 (`amp-image test --conformance --active-standby
# --import-audit FILE`; see README.rst, "Pruning").  install.d/76 removes
# them.  Set DIB_AMP_AGENT_PRUNE="" to keep the venv whole.
# The audit ran with octavia 19: another release's agent may read what 19's
# does not (16.x's config imports oslo_policy), so its venv stays whole.  A
# git or folder source (no version here) is pruned, and the prune's own check
# that every octavia program still loads stops a build it would break.
case "${DIB_AMP_AGENT_VERSION:-}" in
    ""|19.*) audited=1 ;;
    *) audited=0 ;;
esac
if [ "${DIB_AMP_SLIM:-1}" = 1 ] && [ "$audited" = 1 ]; then
    export DIB_AMP_AGENT_PRUNE=${DIB_AMP_AGENT_PRUNE-"Mako PyJWT PyMySQL Pygments
Routes SQLAlchemy-Utils alembic automaton autopage castellan cliff cmd2
cotyledon decorator dogpile.cache futurist jmespath jsonpatch
keystonemiddleware markdown-it-py mdurl networkx openstacksdk oslo.cache
oslo.policy oslo.upgradecheck packaging pecan platformdirs prettytable
prometheus_client prompt_toolkit pyasn1 pyasn1_modules pycadf pycparser pydot
pyparsing pyperclip python-barbicanclient python-cinderclient
python-glanceclient python-keystoneclient python-novaclient repoze-lru rich
rich-argparse simplegeneric statsd taskflow tenacity testresources
testscenarios tzdata warlock wcwidth"}
else
    export DIB_AMP_AGENT_PRUNE=${DIB_AMP_AGENT_PRUNE-}
fi
