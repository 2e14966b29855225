from regswitch.cli.main import main

main()
