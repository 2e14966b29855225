from regswitch.console.cli import main

main()
