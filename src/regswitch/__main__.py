from regswitch.cli.main import main

# guarded: `serve --workers` starts workers with multiprocessing's "spawn",
# which imports the parent's main module again in each of them
if __name__ == "__main__":
    main()
