# bash completion for perceiver-cl. Installed as share/bash-completion/completions/perceiver-cl;
# or: source contrib/completion/perceiver-cl.bash
#
# The commands and each command's options come from the program itself ('perceiver-cl help
# --commands', 'help --options CMD'), made from the same tables as its parser and --help.

_perceiver_cl_values() { # candidates for an option's value, by the value's name in --help
    case $1 in
    DIR) compgen -f -- "$2" ;;
    FILE) compgen -f -- "$2" ;;
    P) compgen -W "hf haiku" -- "$2" ;;
    FMT) compgen -W "md csv json" -- "$2" ;;
    NAME | D) compgen -W "cpu 0 1 2 3" -- "$2" ;;
    A) compgen -W "MLM image_classification image_classification_fourier image_classification_conv optical_flow multimodal_autoencoding" -- "$2" ;;
    esac
}

_perceiver_cl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} bin=${COMP_WORDS[0]}
    COMPREPLY=()
    if [ "$COMP_CWORD" -eq 1 ]; then
        mapfile -t COMPREPLY < <(compgen -W "$("$bin" help --commands 2>/dev/null) help --help --version" -- "$cur")
        return
    fi
    local cmd=${COMP_WORDS[1]} opts
    if [ "$cmd" = help ]; then
        mapfile -t COMPREPLY < <(compgen -W "$("$bin" help --commands 2>/dev/null)" -- "$cur")
        return
    fi
    opts=$("$bin" help --options "$cmd" 2>/dev/null) || return
    # --name=VALUE
    if [[ $cur == --*=* ]]; then
        local name=${cur%%=*} value=${cur#*=} arg
        arg=$(awk -v o="$name" '$1 == o && $2 !~ /^-/ { print $2 }' <<<"$opts")
        [ -n "$arg" ] && mapfile -t COMPREPLY < <(_perceiver_cl_values "$arg" "$value" | sed "s|^|$name=|")
        return
    fi
    # the value of the option before
    local arg
    arg=$(awk -v o="$prev" '($1 == o || $NF == o) && NF > 1 && $2 !~ /^-/ { print $2 }' <<<"$opts")
    if [ -n "$arg" ]; then
        mapfile -t COMPREPLY < <(_perceiver_cl_values "$arg" "$cur")
        return
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(awk '{ print $1; if ($NF ~ /^-[^-]/) print $NF }' <<<"$opts")" -- "$cur")
        return
    fi
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}

complete -o default -F _perceiver_cl perceiver-cl
